"""Networks: the StyleGAN2 split generator, encoders, the face parser."""
