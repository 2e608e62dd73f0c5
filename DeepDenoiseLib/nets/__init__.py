"""The networks: a UNet family (2D or 3D, plain or residual blocks), the blind-spot network and a patch discriminator."""
