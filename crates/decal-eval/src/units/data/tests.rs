//! Tests of the data-side planning: ids are stable, and adding an OOD set only adds units.
