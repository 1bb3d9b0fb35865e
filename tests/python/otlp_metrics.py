"""Sends metrics with the real OpenTelemetry Python SDK to heimdall (used by the Rust integration tests).

usage: otlp_metrics.py http|grpc ENDPOINT TENANT SERVICE
"""
import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

proto, endpoint, tenant, service = sys.argv[1:5]
if proto == "http":
    headers = {"X-Scope-OrgID": tenant}
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint + "/otlp/v1/metrics", headers=headers)
else:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    # gRPC metadata keys must be lowercase.
    exporter = OTLPMetricExporter(endpoint=endpoint, headers={"x-scope-orgid": tenant}, insecure=True)

# The SDK logs export failures but force_flush() still returns True: record every result ourselves.
results = []
_export = exporter.export


def export(*args, **kwargs):
    result = _export(*args, **kwargs)
    results.append(result)
    return result


exporter.export = export

resource = Resource.create(
    {
        "service.name": service,
        "service.namespace": "shop",
        "service.instance.id": "i-1",
        "k8s.cluster.name": "dev",
    }
)
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
provider = MeterProvider(resource=resource, metric_readers=[reader])
meter = provider.get_meter("heimdall-test", "1.0")

requests = meter.create_counter("http.server.requests", unit="{request}", description="Requests served")
duration = meter.create_histogram("http.server.duration", unit="ms", description="Request latency")
memory = meter.create_up_down_counter("process.memory.usage", unit="By", description="Memory in use")
for i in range(10):
    requests.add(1, {"http.route": "/cart", "http.method": "GET"})
    duration.record(5 * i, {"http.route": "/cart"})
memory.add(4096)

ok = provider.force_flush(timeout_millis=20_000)
provider.shutdown()
if not ok or not results or any(r != MetricExportResult.SUCCESS for r in results):
    sys.exit(f"export failed: {results}")
print("exported")
