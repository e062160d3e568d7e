"""The question: input checks and modes, its shape parsed once, follow-up resolution."""
