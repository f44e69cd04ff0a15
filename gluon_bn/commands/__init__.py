"""The ``gluon-bn`` commands, one module each: config in, record, report and plots out.

Each module holds its command's config (or takes the library's), its ``run(config, log=print)``
and the writing of its own record, report and plots; what they share is the library's
(:mod:`gluon_bn.runs` above all). The CLI (``gluon_bn.cli``) runs them; notebooks import the
library, never a command.
"""

from . import bench, compare, exercise, launch, reproduce

#: Each command's module, by its name on the command line.
COMMANDS = {"reproduce": reproduce, "compare": compare, "exercise": exercise, "bench": bench, "launch": launch}

__all__ = ["COMMANDS", "bench", "compare", "exercise", "launch", "reproduce"]
