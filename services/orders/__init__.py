"""The orders service: the checkout saga (stock reserved, converted to EUR, paid, committed,
captured, confirmed — or compensated), event-sourced orders, and the events that tell
loyalty and notifications about them."""
