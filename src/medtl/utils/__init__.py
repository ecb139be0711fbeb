"""Small helpers every stage uses: errors, atomic files, locks, memos, the ordered
parallel map and number formatting. Imports nothing else of medtl."""
