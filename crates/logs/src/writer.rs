//! [`LogWriter`] for the local [`LogStore`]: the push path's seam to storage.

use async_trait::async_trait;
use common::TenantId;

use crate::model::{LogWriter, PushLimits, PushResult, StreamPush};
use crate::store::{LogStore, PushOptions};
use crate::Error;

#[async_trait]
impl LogWriter for LogStore {
    async fn push(
        &self,
        tenant: &TenantId,
        streams: Vec<StreamPush>,
        limits: &PushLimits,
    ) -> Result<PushResult, Error> {
        let opts = PushOptions {
            max_streams: limits.max_streams,
            ooo_window_ns: limits.ooo_window_ns,
        };
        let out = LogStore::push(self, tenant, streams, &opts).await?;
        Ok(PushResult {
            accepted: out.accepted_entries,
            rejected: out.rejected,
        })
    }
}
