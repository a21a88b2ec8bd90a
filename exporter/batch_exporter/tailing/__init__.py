"""Incremental reading of log files: finding lines and pattern hits in appended bytes, following
files across rotation and truncation, and keeping the position in a state file."""
