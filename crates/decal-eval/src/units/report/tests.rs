//! Tests of the report unit.
