"""The guarded release: one runner for every verb that changes a release (apply, deploy, promote, rollback).

Each verb only plans what to change (a `Change` per app); `runner.ReleaseTransaction` owns the order
confirm → lock all → notify start → helm under watch → final image check → undo on failure → audit →
unlock → notify end. `watch` follows helm while it waits; `speed` holds the start-up tricks that let
helm start sooner; `outcome` turns many apps' results into one summary and one exit code.
"""
