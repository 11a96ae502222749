"""Feature visualization (Olah, Mordvintsev & Schubert 2017): rendering what a channel looks
for from scratch, dataset examples, and the channel grid the page and the command share."""
