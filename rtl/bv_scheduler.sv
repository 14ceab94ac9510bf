// BitVert column scheduler for one sub-group (BBS.md §9.2).
//
// Takes the sub-group's bits of the current weight column, decides the polarity
// (compute through the ones, or through the zeros when more than half the bits are
// ones) and lists the positions of the effectual bits for the PE's selection lanes.
// BBS guarantees at most SG/2 effectual bits, so SG/2 lanes always suffice.
//
// WINDOWED = 1 (the optimized design): lane k only looks at the SG/2+1 positions
// [SG/2-1-k, SG-1-k]. The lanes run as a cascade of priority encoders from the top
// position down; each lane takes the highest effectual bit still set in its window
// and clears it for the lanes after it. Lane k's select is relative to the bottom of
// its window, so the PE needs only an (SG/2+1):1 multiplexer per lane.
// WINDOWED = 0 (the unoptimized design of Table IV): every lane sees all SG positions
// and selects with an SG:1 multiplexer.
module bv_scheduler #(
    parameter int SG = 8,
    parameter int WINDOWED = 1,
    localparam int LANES = SG / 2,
    localparam int WIN = WINDOWED != 0 ? LANES + 1 : SG,
    localparam int SELW = $clog2(WIN)
) (
    input  logic [SG-1:0]         column,   // bit i = weight i of the sub-group
    output logic                  invert,   // 1: the column is computed through its zeros
    output logic [LANES*SELW-1:0] sel,      // lane k: position inside its window
    output logic [LANES-1:0]      valid     // lane k carries an effectual bit
);
    localparam int CW = $clog2(SG + 1);

    // Combinational helpers are functions so that no always block reads what it writes
    // (event-driven simulators such as Icarus would re-trigger it).
    function automatic logic [CW-1:0] popcount(input logic [SG-1:0] bits);
        logic [CW-1:0] n;
        n = '0;
        for (int i = 0; i < SG; i++) n = n + CW'(bits[i]);
        popcount = n;
    endfunction

    // The cascade of priority encoders: lane k takes the highest effectual bit still set in
    // its window and clears it for the lanes after it. Returns {valid, sel} per lane.
    function automatic logic [LANES*(SELW+1)-1:0] cascade(input logic [SG-1:0] bits);
        logic [SG-1:0] left;
        logic [LANES*(SELW+1)-1:0] r;
        logic [SELW-1:0] s;
        logic v;
        left = bits;
        r = '0;
        for (int k = 0; k < LANES; k++) begin
            int lo;
            lo = WINDOWED != 0 ? LANES - 1 - k : 0;
            s = '0;
            v = 1'b0;
            for (int p = 0; p < WIN; p++) begin  // ascending: the highest set bit wins
                if (left[lo+p]) begin
                    s = SELW'(p);
                    v = 1'b1;
                end
            end
            left = left & ~(SG'(v) << (lo + 32'(s)));
            r[k*(SELW+1) +: SELW+1] = {v, s};
        end
        cascade = r;
    endfunction

    logic [CW-1:0] ones;
    logic [SG-1:0] effectual;
    logic [LANES*(SELW+1)-1:0] lanes;

    assign ones = popcount(column);
    assign invert = ones > CW'(SG / 2);
    assign effectual = invert ? ~column : column;
    assign lanes = cascade(effectual);

    for (genvar k = 0; k < LANES; k++) begin : g_lane
        assign sel[k*SELW +: SELW] = lanes[k*(SELW+1) +: SELW];
        assign valid[k] = lanes[k*(SELW+1) + SELW];
    end
endmodule
