"""Golden sets: curated labelled images, class frequencies, evaluation against FP32."""
