"""From files to tensors: readers, mask schemes, layouts, patient groups, duplicates,
splits, the decoded-sample cache, transforms, loaders and the audit."""
