//! The destinations' compiled routes, which the ingest path matches each new event against to
//! decide where it is delivered.

use crate::delivery::routes::RoutePatterns;
use crate::model::events::NormalizedEvent;

/// A destination's name and compiled routes.
pub struct DestinationRoutes {
    pub name: String,
    pub patterns: RoutePatterns,
}

/// The compiled routes of each destination; one whose stored routes do not compile is
/// skipped (and logged), since the API and the config refuse such routes.
pub fn destination_routes(
    destinations: Vec<crate::delivery::attempt::Destination>,
) -> Vec<DestinationRoutes> {
    destinations
        .into_iter()
        .filter_map(|destination| match RoutePatterns::new(&destination.routes) {
            Ok(patterns) => Some(DestinationRoutes {
                name: destination.name,
                patterns,
            }),
            Err(error) => {
                tracing::warn!(destination = %destination.name, "skipping invalid routes: {error:#}");
                None
            }
        })
        .collect()
}

/// Pairs each event with the names of the destinations whose routes match it.
pub fn route_events(
    destinations: &[DestinationRoutes],
    events: Vec<NormalizedEvent>,
) -> Vec<(NormalizedEvent, Vec<String>)> {
    events
        .into_iter()
        .map(|event| {
            let matching = destinations
                .iter()
                .filter(|destination| destination.patterns.matches_any(&event.route_keys))
                .map(|destination| destination.name.clone())
                .collect();
            (event, matching)
        })
        .collect()
}
