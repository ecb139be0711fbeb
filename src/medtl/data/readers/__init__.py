"""Reading one file: images and masks (:mod:`.io`), DICOM (:mod:`.dicom`) and NIfTI
volumes (:mod:`.volumes`), with errors naming the file."""
