//! Where the CLI's progress lines and messages go: stderr, as the plain lines a person reads
//! (the default) or as JSON objects, one per line, that cluster log tools parse
//! (`--log-format json`).

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain lines, as a person reads them.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields.message` and, where they apply,
    /// `fields.job`, `fields.stage`, `fields.step`, `fields.total`, `fields.loss`, `fields.lr`.
    Json,
}

/// Install the process's log subscriber (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO);
    let _ = match format {
        LogFormat::Text => builder.event_format(MessageOnly).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The event's message and nothing else: the lines look as they always did.
struct MessageOnly;

impl<S, N> FormatEvent<S, N> for MessageOnly
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        struct Message<'w, 'a>(&'w mut Writer<'a>, fmt::Result);
        impl tracing::field::Visit for Message<'_, '_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "message" {
                    self.1 = write!(self.0, "{value:?}");
                }
            }
        }
        let mut visit = Message(&mut writer, Ok(()));
        event.record(&mut visit);
        visit.1?;
        writeln!(writer)
    }
}
