//! Desired-vs-installed route diff: which routes to add, replace and delete, in batches.
