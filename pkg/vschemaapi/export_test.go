package vschemaapi

// WriteTokens writes a tokens file for the external tests.
var WriteTokens = writeTokens
