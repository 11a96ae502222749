"""What runs optimize and how: losses (Gram matrix, content and style losses, total variation,
the guided Gram), composable objectives, image transforms and image parameterizations."""
