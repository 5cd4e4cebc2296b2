//! Real-peer test harness.
