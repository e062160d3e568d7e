"""Korean document-grounded Q&A over government policy documents (뿌리산업, 소재·부품·장비)."""

__version__ = "0.1.0"
