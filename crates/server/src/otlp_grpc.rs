//! OTLP over gRPC (port 4317): `MetricsService/Export`, `LogsService/Export` and
//! `TraceService/Export`. Tenancy comes from the `x-scope-orgid`
//! metadata, decided by the same rules as HTTP.

use proto::otlp::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use proto::otlp::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use proto::otlp::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use proto::otlp::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use proto::otlp::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use proto::otlp::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::tenancy::Tenancy;

/// The gRPC metrics receiver.
pub struct Metrics {
    /// The metrics API state (store, limits, config).
    pub api: metrics::api::MetricsApi,
    /// Tenancy rules.
    pub tenancy: Tenancy,
}

fn to_status(e: &metrics::Error) -> Status {
    match e.status() {
        400 | 413 | 415 => Status::invalid_argument(e.to_string()),
        429 => Status::resource_exhausted(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl MetricsService for Metrics {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let tenant = tenant_of(&self.tenancy, req.metadata())?;
        let limits = self.api.overrides.get(&tenant);
        let decoded = metrics::ingest::otlp::translate(
            req.into_inner(),
            &self.api.cfg,
            &limits,
            common::time::now_ms(),
        );
        let resp = metrics::api::ingest_otlp(&self.api, &tenant, decoded)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(resp))
    }
}

/// The tonic service, with gzip accepted and the message size capped.
pub fn service(m: Metrics, max_message: usize) -> MetricsServiceServer<Metrics> {
    MetricsServiceServer::new(m)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message)
}

/// The gRPC logs receiver.
pub struct Logs {
    /// The logs API state.
    pub api: logs::api::LogsApi,
    /// Tenancy rules.
    pub tenancy: Tenancy,
}

fn tenant_of(
    tenancy: &Tenancy,
    md: &tonic::metadata::MetadataMap,
) -> Result<common::TenantId, Status> {
    let headers = md.clone().into_headers();
    let set = tenancy
        .resolve(&headers, true)
        .map_err(|r| match r.status.as_u16() {
            401 => Status::unauthenticated(r.message),
            403 => Status::permission_denied(r.message),
            _ => Status::invalid_argument(r.message),
        })?;
    Ok(set
        .single_tenant()
        .expect("write sets have one tenant")
        .clone())
}

#[tonic::async_trait]
impl LogsService for Logs {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let tenant = tenant_of(&self.tenancy, req.metadata())?;
        let req = req.into_inner();
        let total: usize = req
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        let raw = logs::ingest::otlp::to_streams(req, common::time::now_ms() * 1_000_000);
        let refused = self.api.ingest(&tenant, raw).await.map_err(|e| {
            let msg = format!("{e} (tenant {tenant})");
            match e.status().as_u16() {
                429 => Status::resource_exhausted(msg),
                400 | 413 | 415 => Status::invalid_argument(msg),
                _ => Status::internal(msg),
            }
        })?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: refused.map(|m| ExportLogsPartialSuccess {
                rejected_log_records: m
                    .rsplit("total ignored: ")
                    .next()
                    .and_then(|t| t.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(total as i64),
                error_message: m,
            }),
        }))
    }
}

/// The tonic logs service, with gzip accepted and the message size capped.
pub fn logs_service(l: Logs, max_message: usize) -> LogsServiceServer<Logs> {
    LogsServiceServer::new(l)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message)
}

/// The gRPC trace receiver.
pub struct Traces {
    /// The traces API state.
    pub api: traces::api::TracesApi,
    /// Tenancy rules.
    pub tenancy: Tenancy,
}

#[tonic::async_trait]
impl TraceService for Traces {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let tenant = tenant_of(&self.tenancy, req.metadata())?;
        let resp = self
            .api
            .ingest(&tenant, req.into_inner())
            .await
            .map_err(|e| {
                let msg = format!("{e} (tenant {tenant})");
                match e.status() {
                    429 => Status::resource_exhausted(msg),
                    400 | 413 | 415 => Status::invalid_argument(msg),
                    _ => Status::internal(msg),
                }
            })?;
        Ok(Response::new(resp))
    }
}

/// The tonic trace service, with gzip accepted and the message size capped.
pub fn traces_service(t: Traces, max_message: usize) -> TraceServiceServer<Traces> {
    TraceServiceServer::new(t)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message)
}
