"""ratiowatch: a streaming alert engine for market scenarios.

Ticks flow in through ``ratiowatch.streams`` (feeds, the ``ticks`` topic, the embedded broker),
``ratiowatch.agents`` keeps rolling-window series in faust tables and emits crossings on the
``events`` topic, and ``ratiowatch.notifiers`` fans them out to email, Slack and push.
"""

__version__ = "0.1.0"
