"""Sends logs to heimdall with real Python clients (used by the Rust integration tests).

usage: loki_logs.py loki URL TENANT COUNT       python-logging-loki handler (JSON push)
       loki_logs.py http|grpc ENDPOINT TENANT COUNT   OpenTelemetry SDK logs exporter

Every client logs COUNT lines `line <i> of <client>` with known attributes; the test reads them
back through the Loki API.
"""
import logging
import sys

client, endpoint, tenant, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

if client == "loki":
    import logging_loki

    handler = logging_loki.LokiHandler(
        url=endpoint + "/loki/api/v1/push", tags={"app": "pyloki", "env": "test"}, version="1"
    )
    failures = []
    handler.handleError = lambda record: failures.append(sys.exc_info()[1])
    # The handler has no header option; its requests session carries the tenant.
    handler.emitter.session.headers["X-Scope-OrgID"] = tenant
    log = logging.getLogger("heimdall-test")
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    for i in range(count):
        level = logging.ERROR if i % 5 == 0 else logging.INFO
        log.log(level, f"line {i} of loki", extra={"tags": {"shard": str(i % 2)}})
    if failures:
        sys.exit(f"push failed: {failures}")
    print("pushed")
    sys.exit(0)

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

if client == "http":
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    exporter = OTLPLogExporter(endpoint=endpoint + "/otlp/v1/logs", headers={"X-Scope-OrgID": tenant})
else:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    exporter = OTLPLogExporter(endpoint=endpoint, headers={"x-scope-orgid": tenant}, insecure=True)

results = []
_export = exporter.export


def export(*args, **kwargs):
    result = _export(*args, **kwargs)
    results.append(result)
    return result


exporter.export = export
resource = Resource.create(
    {"service.name": "py" + client, "k8s.namespace.name": "shop", "host.name": "node-1"}
)
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
set_logger_provider(provider)
trace.set_tracer_provider(TracerProvider(resource=resource))
tracer = trace.get_tracer("heimdall-test")
log = logging.getLogger("otel-" + client)
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
for i in range(count):
    with tracer.start_as_current_span("work"):
        level = logging.ERROR if i % 5 == 0 else logging.INFO
        log.log(level, f"line {i} of {client}", extra={"order.id": f"o-{i}"})
provider.force_flush()
provider.shutdown()
# The result enum was renamed across SDK versions (LogExportResult → LogRecordExportResult).
if len(results) != count or any(r.name != "SUCCESS" for r in results):
    sys.exit(f"export failed: {results}")
print("exported")
