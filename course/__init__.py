"""The course's own tooling, run from a checkout: not what a learner imports (that is ``companion``).

- ``course.config``: the book's settings read from ``_config.yml`` (the repository, in one place);
- ``course.dependencies``: which companion files each chapter runs (what re-executes it in a book build);
- ``course.myst``: MyST Markdown -> the plain Markdown that Colab renders;
- ``course.notebooks``: ``python -m course.notebooks [--check]`` writes the Colab editions, the public
  checks and the otter-grader autograders from the chapter sources;
- ``course.grade``: ``python -m course.grade SUBMISSION.ipynb ... [--json]`` grades submitted notebooks.

Nothing here imports torch: the tools read and write notebooks; the learner's code runs elsewhere.
"""
