//! `[tasks]`: the periods of the background tasks (`app/tasks.rs`). Their defaults are written
//! here only; the embedded default config documents them in comments, and a test checks that
//! the two agree.

use anyhow::bail;
use serde::Deserialize;

/// The periods of the background tasks, in milliseconds.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// How often the ingest path reads the sources and destinations again.
    pub source_refresh_ms: u64,
    /// How often the plugin swapper looks for new active versions and changed files.
    pub plugin_poll_ms: u64,
    /// How often the queue gauges of `/metrics` are read.
    pub queue_gauges_ms: u64,
    /// The least time between two tries to get a lost `LISTEN` connection back.
    pub listen_retry_ms: u64,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            source_refresh_ms: 2000,
            plugin_poll_ms: 1000,
            queue_gauges_ms: 5000,
            listen_retry_ms: 1000,
        }
    }
}

impl TasksConfig {
    /// Every period must be above 0: a zero period would spin its task.
    pub fn check(&self, destination_refresh_ms: u64) -> anyhow::Result<()> {
        let periods = [
            ("tasks.source_refresh_ms", self.source_refresh_ms),
            ("tasks.plugin_poll_ms", self.plugin_poll_ms),
            ("tasks.queue_gauges_ms", self.queue_gauges_ms),
            ("tasks.listen_retry_ms", self.listen_retry_ms),
            ("delivery.destination_refresh_ms", destination_refresh_ms),
        ];
        if let Some((key, _)) = periods.iter().find(|(_, period)| *period == 0) {
            bail!("invalid configuration: {key} must be above 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_CONFIG, default_destination_refresh_ms};

    /// The keys a section of the default config documents in comments (`# key = value`).
    fn documented_keys(section: &str) -> toml::Table {
        let start = DEFAULT_CONFIG
            .find(&format!("\n[{section}]\n"))
            .expect("the section is in the default config");
        let body = &DEFAULT_CONFIG[start + section.len() + 4..];
        let body = &body[..body.find("\n\n").unwrap_or(body.len())];
        let commented: Vec<&str> = body
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                line.split_once(" = ").is_some_and(|(key, _)| {
                    key.bytes()
                        .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
                })
            })
            .collect();
        commented.join("\n").parse().expect("documented keys parse")
    }

    #[test]
    fn the_default_config_documents_the_task_periods_as_the_code_defines_them() {
        let documented = documented_keys("tasks");
        let defined = toml::Table::try_from(TasksConfig::default()).unwrap();
        assert_eq!(documented, defined);
        assert_eq!(Config::from_toml("").unwrap().tasks, TasksConfig::default());
        assert_eq!(
            documented_keys("delivery")["destination_refresh_ms"].as_integer(),
            Some(default_destination_refresh_ms() as i64)
        );
        let changed = Config::from_toml("[tasks]\nplugin_poll_ms = 50").unwrap();
        assert_eq!(changed.tasks.plugin_poll_ms, 50);
        assert_eq!(changed.tasks.queue_gauges_ms, 5000);
        let error = format!(
            "{:#}",
            Config::from_toml("[tasks]\nqueue_gauges_ms = 0").unwrap_err()
        );
        assert!(error.contains("tasks."), "{error}");
    }
}
