"""Degrading and marking answers for high-risk callers: transforms, watermark, detector."""
