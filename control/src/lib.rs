//! carrier's control process. The BGP speaker, the RIB and the compile step that
//! programs the dataplane arrive with the control issue; the dataplane's
//! [`carrier_dataplane::tables::TableCommand`] is the seam it will write to.
