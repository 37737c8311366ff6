"""The operational surface every role serves: Prometheus metrics, health and readiness, and the
one HTTP server per process that exposes them (and mounts the web role's page). See
docs/operations.md.

    metrics = Metrics()                      # one per process, shared by the roles it hosts
    health = Health()
    server = await OpsServer(metrics, health, token=token, live=hub).start(address)

faust's sensors: ``ratiowatch.ops.faust_sensors.install_faust_monitor`` (imported on demand: it
pulls in faust).
"""

from .health import CheckResult, Health, ReadyFlag, Verdict
from .http import (HttpAddress, HttpExposureError, OpsServer, add_http_argument, http_settings,
                   parse_http_address)
from .metrics import Metrics

__all__ = ["Metrics", "Health", "ReadyFlag", "CheckResult", "Verdict", "OpsServer", "HttpAddress",
           "HttpExposureError", "add_http_argument", "http_settings", "parse_http_address"]
