"""Sends metrics with the real OpenTelemetry Python SDK to heimdall (used by the Rust integration tests).

usage: otlp_metrics.py http|grpc ENDPOINT TENANT SERVICE
"""
import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

proto, endpoint, tenant, service = sys.argv[1:5]
headers = {"X-Scope-OrgID": tenant}
if proto == "http":
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint + "/otlp/v1/metrics", headers=headers)
else:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint, headers=headers, insecure=True)

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
if not ok:
    sys.exit("export failed")
print("exported")
