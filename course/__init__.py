"""The course's own tooling, run from a checkout: not what a learner imports (that is ``companion``).

- ``course.config``: the book's settings read from ``_config.yml`` (the repository, in one place);
- ``course.dependencies``: which companion files each chapter runs (what re-executes it in a book build);
- ``course.myst``: MyST Markdown -> the plain Markdown that Colab renders;
- ``course.notebooks``: ``python -m course.notebooks [--check]`` writes the Colab editions, the public
  checks and the Gradescope autograders from the chapter sources;
- ``course.grade``: ``python -m course.grade SUBMISSION.ipynb|FOLDER ... [--json] [--jobs N]`` grades
  submitted notebooks, each in a judge process of its own;
- ``course.spec``: the grader's own copy of a chapter's questions, points, checks and forbidden calls;
- ``course.judge``: one submission's judge (runs the checks, never the learner's code);
- ``course.learner``: the learner's process (runs the notebook's cells, answers the judge's calls);
- ``course.sandbox``: how the learner's process is started (bubblewrap, rlimits, its own uid);
- ``course.wire`` and ``course.crossing``: what crosses between the two, as data only.

The command-line tools import no torch; the judge and the learner's process do, in processes of
their own.
"""
