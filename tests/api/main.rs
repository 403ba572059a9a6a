//! One integration-test binary; each module tests one part of the service.

mod xoxoday_client;
