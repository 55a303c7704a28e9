"""ActiveCampaign: the v3 API under /api/3, trackcmp's POST /event and v1 track_event_add
(seeds/activecampaign-v3-event-tracking-guide.txt, activecampaign-v1-track-event-add.txt)."""
