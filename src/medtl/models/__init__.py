"""Models: encoders, decoders, pretrained weights and the model builder."""
