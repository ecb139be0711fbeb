"""Decoded samples held once: the one decode (:mod:`.decode`), the cache modes and
fingerprint (:mod:`.modes`) and the memory-mapped disk cache (:mod:`.disk`)."""
