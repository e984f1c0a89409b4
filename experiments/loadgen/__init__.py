"""Load generator: replay a trace against a real OpenAI-compatible server (issue 11).

:mod:`experiments.loadgen.request` is one request on the wire (options, record, prompt, probe,
one streamed exchange); :mod:`experiments.loadgen.client` sends a whole plan open-loop;
:mod:`experiments.loadgen.plan` makes that plan from the config (trace transforms, length
scaling, the server's context); :mod:`experiments.loadgen.records` turns the records into
contract-4 tables and a summary through the simulator's metric code;
:mod:`experiments.loadgen.run` is one run (its files and summary). The door is
:mod:`experiments.apps.loadgen` (``splitbench-loadgen``).
"""
