"""Browser journeys: a real ``echochat serve`` process driven by headless Chromium."""
