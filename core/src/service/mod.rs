//! Listeners, shutdown and readiness (filled in by the service work).
