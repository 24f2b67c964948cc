"""BatchInference: a model over input files, in shards, by several worker processes.

``plan`` (pure) cuts the input into shards and says which are left; ``rows`` reads inputs and
writes a shard's predictions; ``worker`` predicts one shard in its own process; ``runner``
(``run_batch``) runs them all with retries and resume. ``python -m mlkube.batch FILE`` runs
the BatchInference documents of a spec file in the foreground with a progress bar.
"""
