"""Background work: the job record, the Huey queue that carries it, and the worker that runs it.

The ``job`` table is the truth the UI shows; a Huey message only says "job N is ready". A worker
that takes a message claims the job with a conditional update, so a message delivered twice, or
a job re-queued after its worker died, still runs once at a time.
"""
