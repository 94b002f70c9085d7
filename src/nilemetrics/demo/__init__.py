"""The demo: a shop page using the tracker, simulated shoppers, and the runner of both.

``nilemetrics demo`` and ``nilemetrics simulate`` (in ``cli``) parse options and
call the runner here. The demo uses the server (its app, over HTTP) and shared
modules; it never imports ``cli`` or ``tui`` (the CLI hands it the dashboard),
and the server never imports the demo.
"""
