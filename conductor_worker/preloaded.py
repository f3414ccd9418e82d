"""The last module the fork server imports (see preload.py), after the task modules.

Importing it freezes everything imported so far out of the garbage collector's reach: a
collection in a pool process then never writes to those objects' pages, which stay shared
with the fork server instead of being copied into every child (about 8 MB each, measured
with the benchmark's 100-task module). Nothing else imports this module.
"""

import gc

gc.collect()
gc.freeze()
