"""What every area shares and nothing feature-specific: the survey's clock and calendar,
masks for personal data, the key-population vocabulary, database locks and transactions,
bulk loading and spreadsheets. Nothing in ``app.core`` imports ``app.models`` or a feature
package (the layers are checked by ``make test``; see docs/architecture.md)."""
