"""The ledger (interfaces.md §5): runs, decisions, deliveries and a hash-chained event log.

Never a name, a national number or a passphrase: the API takes counts, file names, checksums,
fingerprints and reasons, and ``chain.canonical`` refuses values shaped like a national number.
"""

from kbi.ledger.chain import ChainBreak, verify
from kbi.ledger.store import AlreadyDelivered, Correction, Delivery, Ledger

__all__ = ["AlreadyDelivered", "ChainBreak", "Correction", "Delivery", "Ledger", "verify"]
