//! What people and machines read: tables, JSON, and the DR reports (HTML, Markdown, JSON:
//! posture and verification in [`dr`], [`failover`], [`drill`]). The renderers do no I/O;
//! [`publish`] is the one place that writes reports into a store and the catalog.

pub mod dr;
pub mod drill;
pub mod failover;
pub mod html;
pub mod output;
pub mod publish;

/// `--output` of the listing commands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

/// `--output` of `lifeboat report`: a self-contained HTML page, the data as JSON (versioned
/// schema), or Markdown for chat and tickets.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Json,
    Md,
}

impl ReportFormat {
    /// The format a file name asks for (`.html`/`.htm`, `.json`, `.md`/`.markdown`).
    pub fn from_extension(path: &std::path::Path) -> Option<ReportFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "html" | "htm" => Some(ReportFormat::Html),
            "json" => Some(ReportFormat::Json),
            "md" | "markdown" => Some(ReportFormat::Md),
            _ => None,
        }
    }
}
