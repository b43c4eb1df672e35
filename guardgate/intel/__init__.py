"""Threat intelligence shared between providers (docs/intel.md).

What one deployment caught leaves as STIX 2.1 (`guardgate.intel.export`,
from the caught ledger of `guardgate.store.ledger`); what peers caught comes
in through the policy's feeds (`guardgate.intel.feeds`: files and TAXII 2.1
collections) or an operator's import, and becomes the ``shared_intel``
risk signal through `guardgate.intel.index`, which the risk engine reads.

    fingerprints  the values that leave, comparable without a shared secret
    index         imported indicators by fingerprint, for the request path
    stix          guardgate's STIX extension and patterns
    export        ledger -> bundle: campaigns, indicators, observed data
    reader        bundle or TAXII envelope -> indicators in force
    taxii         polling and publishing TAXII 2.1 collections
    feeds         the background poller, the index swap, what matched
    service       export and status for the operator API and the commands
"""
