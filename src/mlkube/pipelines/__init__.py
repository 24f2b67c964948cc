"""Pipelines: the pure parts of running a ``kind: Pipeline``.

``state`` (step and run phases, as JSON), ``dag`` (which steps start, which are skipped, when
a run ends), ``templates`` (``{{...}}`` filled in), ``gates`` (conditions on metrics) and
``cache`` (the key a step's inputs hash to). The local controller's runner
(``backends.local.controller.pipelines``) does the I/O.
"""
