"""What mask files mean (binary, labels, palette, colours): the scheme
(:mod:`.scheme`) and the scan that decides it (:mod:`.scan`)."""
