//! The gateway policy applied on import and export, each rule visible as a reason when a route is refused.
