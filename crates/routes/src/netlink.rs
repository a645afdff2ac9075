//! The rtnetlink driver: installs routes and nexthop objects, removes stale ones at start, follows link events.
