//! The connection model of sc-extension: the request schema, the catalog of documented
//! configuration names, object names, validation and content hashing. No I/O.
