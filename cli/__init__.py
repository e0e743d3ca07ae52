"""The `testbed` command line: the composition root that wires the core (testbed/) to an
interpreter (sim/ or live/). It lives outside testbed/ so that the core never imports an engine."""
