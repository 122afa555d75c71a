//! The sink as a pipeline component.

use async_trait::async_trait;

use super::config::FacebookPixelConfig;
use crate::topology::{BuildContext, BuildError, Healthcheck, Sink, SinkConfig};

#[async_trait]
impl SinkConfig for FacebookPixelConfig {
    async fn build(&self, _cx: BuildContext) -> Result<(Box<dyn Sink>, Healthcheck), BuildError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(BuildError(problems.join("; ")));
        }
        Err(BuildError(
            "delivery to the Conversions API is not available in this build yet; use `fbpixel map` to see the mapped events".into(),
        ))
    }

    fn acknowledgements(&self) -> bool {
        self.acknowledgements.enabled
    }
}
