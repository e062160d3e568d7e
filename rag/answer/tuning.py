"""Every number that tunes how an answer line is chosen and composed, named, each with its
reason. Set by hand on the curated set (evaluation/qa.jsonl) in sessions 1–2; the
abstention thresholds are not here: they are calibrated data (rag/data/abstention.json).
"""

from __future__ import annotations

# --------------------------------------------------------------------------- term weights

#: Exponent on a question word's BM25 idf when it weighs coverage: rare words count more.
IDF_POWER = 1.0
#: Weight multiplier for numbers in the question ("2026년", "50%"): a line without the
#: number asked about rarely answers.
NUMBER_WEIGHT = 2.0

# --------------------------------------------------------------------------- line scores

#: Discount on question words found only in a candidate's context (heading path, table
#: header, the line above / the line a list item hangs under).
CONTEXT_WEIGHT = 0.7
#: Weight of the passage's retrieval rank prior 1/(1+rank): breaks near-ties toward the
#: better passage without outvoting coverage.
RANK_WEIGHT = 0.08
#: Bonus for a candidate of the kind the question asks for (a number for 몇/얼마, a date
#: for 언제), and the malus for one that is not.
TYPE_BONUS = 0.12
#: Malus for a heading or a lead-in ending with ':': it names a topic, rarely the answer
#: (its items are shown under it when it wins anyway).
HEADING_MALUS = 0.05

# --------------------------------------------------------------------------- evidence first

#: A candidate scoring at least this share of the best may go first when it, and not the
#: best, carries everything the question asks for.
SUPPORT_WINDOW = 0.75
#: How many of the best candidates are checked for that (the checks cost a few ms each).
SUPPORT_DEPTH = 12
#: ... and when it covers the question's subject phrase nearly as well as the best (a line
#: about another industry's 2022 figures does not answer "주조 업종 2022년 사업체 수").
TOPIC_SLACK = 0.25

# --------------------------------------------------------------------------- composition

#: Lines in one answer at most (a list counts as one line).
MAX_ANSWER_LINES = 3
#: Items of a list shown at most.
MAX_LIST_ITEMS = 8
#: A candidate within this share of the best score is shown too (1-3 lines in all).
NEAR_TIE = 0.8
#: A further candidate joins the answer when it covers this share of the question's
#: weight that the lines already chosen do not (multi-part questions) ...
PART_GAIN = 0.15
#: ... and scores at least this share of the best.
GAIN_MIN_SCORE = 0.55
#: A part's best candidate joins the answer when it covers this share of the part ...
PART_MIN_COVERAGE = 0.5
#: ... unless the lines so far already cover this share of the part.
PART_COVERED = 0.75
#: For a question asking both ("각각", "차이"), a line of another document joins when it
#: scores this share of the best.
OTHER_DOC_MIN_SCORE = 0.6
#: For a list question, a near-best line (this share of the best, among the first
#: LIST_LEAD_DEPTH) that leads a list answers better than the best line.
LIST_LEAD_WINDOW = 0.9
LIST_LEAD_DEPTH = 5

# --------------------------------------------------------------------------- learned line (rag.answer.learned_compose)

#: Candidate lines (best lexical score first) that the learned ranker orders and the
#: evidence checks run on: the line holding the answer is among the first 20 for about
#: 95% of answerable questions, and each check costs a little.
POOL_SIZE = 20

# --------------------------------------------------------------------------- abstention signals

#: How many of the best candidates ``best_coverage`` looks at.
BEST_COVERAGE_DEPTH = 50
